"""What a port may send and receive, as values the datapaths compile."""
