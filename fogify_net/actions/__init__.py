"""Runtime actions on a running deployment, through the Backend contract only."""
