"""Matrix platform: a bot account (matrix-nio) that turns invited rooms or threads into stranger chats."""
