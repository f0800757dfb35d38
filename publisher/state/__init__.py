"""The state topic: its records (codec) and what a process keeps of them (memory)."""
