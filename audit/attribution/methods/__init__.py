"""One small module per attribution method; each says only what differs from its family base."""
