"""Object recognition by probing slots (issue 23): match slots to objects, then train a small MLP on them."""
