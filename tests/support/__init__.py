"""Test infrastructure that is not the product: a Swarm of extra dockerds on one machine."""
