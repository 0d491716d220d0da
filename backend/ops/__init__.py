"""The operations page's figures: replica heartbeats and the backlogs an operator watches."""
