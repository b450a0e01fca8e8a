"""Networks: the Appa-family convolutional autoencoder and the ViDiT backbone."""
