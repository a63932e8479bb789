"""File readers and writers of every modality (images, video, point clouds, meshes, PLY, splats),
data paths (``paths``: the data root, atomic writes) and training crops (``training``)."""
