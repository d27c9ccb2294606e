"""What runs on the machine: bootstrap template, agent, and the script's client."""
