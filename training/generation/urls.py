from django.urls import path

from training.generation import views

urlpatterns = [
    path("generate/", views.generate_page, name="generate-page"),
    path(
        "generate/jobs/<int:job_id>/",
        views.generation_job_page,
        name="generate-job-page",
    ),
    path(
        "generate/jobs/<int:job_id>/cancel/",
        views.generation_job_cancel_page,
        name="generate-job-cancel",
    ),
]
