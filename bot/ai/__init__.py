"""AI providers behind one interface: Gemini, any OpenAI-compatible endpoint, and the offline responder."""
