"""The response cache: identical requests answered from a stored answer (`[cache]`)."""
