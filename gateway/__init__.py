"""lockgate's composition root: settings, CLI, and (soon) the HTTP gateway."""
