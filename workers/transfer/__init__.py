"""Moving bytes: upload and download pipelines, volumes, part budget, bandwidth, encryption."""
