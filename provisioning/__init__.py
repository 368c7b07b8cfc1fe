"""provisioning: planned (see the project issues); nothing ships here yet."""
