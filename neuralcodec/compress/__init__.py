"""Model compression applied to our own codecs.

``intconv``  exact integer convolutions at float32 speed (bounded partial sums), C epilogues
``intnet``   post-training quantisation of float modules into exact integer twins (``IntNet``
             for entropy-model networks, ``IntSynthesis`` for the image synthesis), calibration
``elic``     the recipe that turns a float ``elic`` model into the ``elic-int`` codec's weights
"""
