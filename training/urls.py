from django.urls import path

from training import views

urlpatterns = [
    path("training/runs/<int:run_id>/", views.run_page, name="training-run-page"),
]
