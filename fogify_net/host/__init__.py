"""This machine's kernel and processes, as both backends use them.

The local backend builds its emulation on these, and so does each Swarm node's
agent: batched ip/tc/nft/iptables commands (kernel), cgroups, the user-space
delay line and the NFQUEUE rules that feed it, stress in a container's
cgroups, commands in a container, container counters, the machine's facts
and capabilities, and the cleanup of everything carrying fogify-net's marks.
Nothing here knows of deployments, actions or the API.
"""
