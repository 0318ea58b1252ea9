"""The network: encoder, importance map, mask and decoder, and its width configurations."""
