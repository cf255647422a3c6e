"""The embedded stranger pool: pairs any two sessions of this bridge, whatever their platform."""
