"""HTTP errors of the API that DRF lacks. Imports nothing but DRF's exceptions, so that
authentication and parser classes (loaded while DRF itself is importing) can use them."""

from rest_framework import exceptions, status


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "payload_too_large"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class ServiceUnavailable(exceptions.APIException):
    """DRF's bare APIException would be a 500; an unavailable dependency is a 503."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A service this request needs is unavailable; try again shortly."
    default_code = "service_unavailable"


class Unprocessable(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The request cannot be processed as sent."
    default_code = "unprocessable"
