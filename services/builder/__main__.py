from dovecote import run
from services.builder.service import Builder

run(Builder)
