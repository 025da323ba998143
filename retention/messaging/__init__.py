"""Message generator: base model loader, prompts, SFT data and training, the safety shield,
approved templates and the evaluation harness."""
