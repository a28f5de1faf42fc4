"""The bounds on what one request may ask for: so a model or an action cannot exhaust the machine.

Each is far above what an experiment on one machine or a small Swarm uses
(the taxi example has 7 instances; a Linux bridge holds 1,023 ports), and
each refusal names its field and the bound.
"""

MAX_INSTANCES = 1000  # instances of one deployment, at deploy and after any scale-out
MAX_COMMAND_TIMEOUT_S = 600.0  # how long a `command` with `wait` may hold its request (and a server thread)
DEFAULT_COMMAND_TIMEOUT_S = 60.0
MAX_SCENARIO_S = 7 * 24 * 3600.0  # a scenario's whole length (the sum of its actions' `time` gaps)
