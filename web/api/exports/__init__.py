"""Owner API: exports of results, raw answers, volunteer reliability and gold, made by a worker or streamed."""
