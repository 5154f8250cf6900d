"""The local world: loopback stand-ins for Rokt, Braze and AWS, the campaign simulator, the queue worker."""
