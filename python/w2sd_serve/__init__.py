"""HTTP serving: FastAPI on uvicorn (``w2sd serve``), Ray Serve beyond one machine."""
