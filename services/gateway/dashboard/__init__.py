"""The dashboard page and the state cards any service's retained state is drawn on."""
