from services.builder.service import Builder
from shared.service import run

run(Builder)
