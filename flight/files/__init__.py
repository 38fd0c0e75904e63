"""Files on the payload: resumable chunked uploads from the ground and the committed file store."""
