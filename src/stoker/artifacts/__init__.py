"""stoker.artifacts"""
