"""Object recognition by probing slots (`dias probe`): match slots to objects, then train a small MLP on them."""
