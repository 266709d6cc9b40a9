"""Drag-and-drop formats between the tag browser and trends."""

TAGS_MIME = "application/x-hmi-tags"  # JSON list of tag names
NODE_MIME = "application/x-hmi-opcua-node"  # JSON list of browsed nodes (connection, node_id, path, tag, ...)
