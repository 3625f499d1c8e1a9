"""Safe model loading: safetensors / weights-only state dicts, TorchScript and Hugging Face dirs."""
