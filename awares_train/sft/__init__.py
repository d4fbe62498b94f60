"""Cold-start SFT on AwaRes trajectories (step 3 of the recipe), on TRL's ``SFTTrainer``."""
