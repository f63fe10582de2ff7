"""Customer usage notifications: pure rules (``rules``), a notifier (``smtp``) and the
periodic task that judges every subscription (``task``)."""
