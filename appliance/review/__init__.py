"""Human review of low-confidence results: the queue, and reviews added to a document's
history (``services.ReviewService``, HTTP views in ``views``)."""
