"""Multi-turn GRPO with the crop tool (step 4 of the AwaRes recipe), on TRL's ``GRPOTrainer``."""
