"""kiosk_ui: planned (see the project issues); nothing ships here yet."""
