"""Feature files in the TransMiter authors' layout, in and out (the layout itself: transmiter.features.released).

transmiter features import FOLDER [--out DIR] [overrides]   -> importer.import_features: the study's
                                                               transfer rows from the files, as records
transmiter features export [--out DIR] [overrides]          -> exporter.export_study: a study's cached
                                                               features and fine-tuned logits as files
"""
