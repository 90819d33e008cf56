"""Gemini's generateContent API: the requests and answers of its clients (google-genai, Gemini
CLI) and of its upstreams, both ways through chat; fields read in either proto-JSON spelling."""
