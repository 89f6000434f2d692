from django.http import HttpRequest, HttpResponse


def gallery(request: HttpRequest) -> HttpResponse:
    return HttpResponse("gallery")


def album_page(request: HttpRequest, slug: str) -> HttpResponse:
    return HttpResponse("album")


def image_page(request: HttpRequest, image_id: int) -> HttpResponse:
    return HttpResponse("image")
