"""The bounds on what one request may ask for: so a model or an action cannot exhaust the machine.

Each is far above what an experiment on one machine or a small Swarm uses
(the taxi example has 7 instances; a Linux bridge holds 1,023 ports), and
each refusal names its field and the bound.
"""

MAX_INSTANCES = 1000  # instances of one deployment, at deploy and after any scale-out
MAX_COMMAND_TIMEOUT_S = 600.0  # how long a `command` with `wait` may hold its request (and a server thread)
DEFAULT_COMMAND_TIMEOUT_S = 60.0
MAX_SCENARIO_S = 7 * 24 * 3600.0  # a scenario's whole length (the sum of its actions' `time` gaps)

# traces (model/traces.py): one trace's file, rows and pass, and how many a deployment plays
MAX_TRACES = 64  # traces of one deployment: the model's and those started inline by actions, together
MAX_TRACE_BYTES = 64 * 2**20  # one trace file
MAX_POINTS = 1_000_000  # rows of a CSV or inline points
MAX_OPPORTUNITIES = 20_000_000  # lines of a Mahimahi trace
MAX_TRACE_SECONDS = 7 * 24 * 3600  # one pass of a trace: at most a week
MAX_STEPS = 1_000_000  # resolution steps in one pass (what the player walks through)
MIN_RESOLUTION = 0.01  # seconds: finer steps than this only load the machine
MAX_RESOLUTION = 3600.0
MAX_OVERLAP_S = 60.0  # a make-before-break move's overlap (the move answers after it)
