"""Lightning callbacks that storygen's configs put in the Trainer."""
