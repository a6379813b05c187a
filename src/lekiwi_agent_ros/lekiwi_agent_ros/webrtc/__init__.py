"""WebRTC streaming: signalling over HTTP, peers, media and the streamer node."""
