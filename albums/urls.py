from django.urls import path

from albums import views

urlpatterns = [
    path("", views.gallery, name="gallery"),
    path("albums/<slug:slug>/", views.album_page, name="album-page"),
    path("images/<int:image_id>/", views.image_page, name="image-page"),
]
