"""What happens: each module takes a session and never commits; the caller owns the transaction."""
