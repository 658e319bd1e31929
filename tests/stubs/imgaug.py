"""A stand-in for imgaug (a test fixture): pytorchyolo imports it for its data augmentation, which building
a model never calls."""


def seed(value):
    pass
