"""Smart-toilet role: Modbus RTU sensors (profiles as data), stall/leak/consumable inputs, hygiene rules."""
