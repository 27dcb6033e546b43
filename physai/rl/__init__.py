"""Post-training: rule-based reward models (`reward`) and PPO on the roll-out runner (`ppo`)."""
