// Placeholder so the workspace manifest parses; the store engineer replaces this file with the power-cut campaign.
