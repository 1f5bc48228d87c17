"""The OpenAI request models the run calls are validated against, and schema errors with a dotted `param`."""
