"""The facade: the Assistants API served on the Responses + Conversations API (`upstream.protocol: responses`)."""
