// The tier-2 agents; see Agent in CartritaRuntime.
