"""Patient-education chatbot over a clinic's own SMP content."""
