"""On-premise document classification appliance for regulated healthcare."""
